# One image for the operator and every stage pod.
# BASE_IMAGE must provide python3 (3.11), pip and venv; where no registry is reachable, build
# a local base (hack/cluster builds one with debootstrap) and pass --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/duckherd/venv
ENV PATH=/opt/duckherd/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so a code change does not re-download them.
COPY constraints.txt pyproject.toml README.md ./
RUN mkdir -p operator/duckherd jobs/duckherd_jobs \
 && touch operator/duckherd/__init__.py jobs/duckherd_jobs/__init__.py \
 && pip install -c constraints.txt ".[all]" \
 && pip uninstall -y duckherd
COPY operator ./operator
COPY jobs ./jobs
RUN pip install --no-deps . \
 && find /opt/duckherd/venv -name '__pycache__' -prune -exec rm -rf {} +
COPY dbt /opt/duckherd/dbt

FROM ${BASE_IMAGE}
ENV PATH=/opt/duckherd/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DUCKHERD_DBT_PROJECT=/opt/duckherd/dbt \
    HOME=/tmp
RUN (getent group duckherd || groupadd --gid 10001 duckherd) \
 && (id duckherd || useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin duckherd)
COPY --from=build /opt/duckherd /opt/duckherd
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["duckherd"]
CMD ["--help"]
