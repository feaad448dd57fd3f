"""One module per resource; each handler converts, calls the facade, converts back."""
