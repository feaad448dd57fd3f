# syntax=docker/dockerfile:1
# Build stage: install the pinned dependencies into a virtualenv and build the wheel.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock pyproject.toml README.md ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY service ./service
COPY proto ./proto
COPY migrations ./migrations
COPY alembic.ini openapi.yaml ./
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation .

# Runtime stage: only the virtualenv and the files read at run time; no compiler, no pip cache.
FROM python:3.11-slim
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/gateway --create-home gateway
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/migrations /app/migrations
COPY --from=build /src/alembic.ini /src/openapi.yaml /app/
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DVP_GATEWAY_DATA_DIR=/var/lib/gateway \
    DVP_GATEWAY_MIGRATIONS_DIR=/app/migrations \
    DVP_GATEWAY_OPENAPI_PATH=/app/openapi.yaml \
    DVP_GATEWAY_GRPC_HOST=0.0.0.0 \
    DVP_GATEWAY_REST_HOST=0.0.0.0 \
    DVP_GATEWAY_METRICS_HOST=0.0.0.0
USER 10001:10001
EXPOSE 50051 8080 9464
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status==200 else 1)"
ENTRYPOINT ["dvp-gateway"]
CMD ["serve"]
