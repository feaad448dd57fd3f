"""One module per area; each handler is ``async def (ctx: Ctx) -> int`` (the exit code)."""
