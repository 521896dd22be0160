# syntax=docker/dockerfile:1
# claude-sidecar image: a build stage installs the package into a virtualenv; the runtime stage copies only
# that virtualenv and runs as an unprivileged user with a read-only root filesystem in mind (all writes go
# to /var/lib/claude-sidecar and /tmp, which the Helm chart mounts as volumes).
#
#   docker build -t claude-sidecar:0.1.0 .
#   docker run --rm -p 8788:8788 -e SIDECAR_HOST=0.0.0.0 claude-sidecar:0.1.0
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/claude-sidecar
WORKDIR /src
# Metadata first so the dependency layer is cached across source-only changes.
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN /opt/claude-sidecar/bin/pip install . \
 && /opt/claude-sidecar/bin/claude-sidecar --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system --gid "${UID}" sidecar \
 && useradd --system --uid "${UID}" --gid sidecar --no-create-home \
      --home-dir /var/lib/claude-sidecar --shell /usr/sbin/nologin sidecar \
 && install -d -o sidecar -g sidecar -m 0750 /var/lib/claude-sidecar \
 && install -d -m 0755 /etc/claude-sidecar
COPY --from=build /opt/claude-sidecar /opt/claude-sidecar
ENV PATH=/opt/claude-sidecar/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SIDECAR_STORE=sqlite:////var/lib/claude-sidecar/events.db
WORKDIR /var/lib/claude-sidecar
USER ${UID}:${UID}
# proxy, fleet heartbeats, admin listener (metrics, health; set SIDECAR_ADMIN_PORT to enable it)
EXPOSE 8788 8789 8791
ENTRYPOINT ["claude-sidecar"]
CMD ["serve"]
