# One image for the operator, every stage pod and the example's dashboard.
# BASE_IMAGE must provide python3 (3.11), pip and venv; where no registry is reachable, build
# a local base (hack/cluster builds one with debootstrap) and pass --build-arg BASE_IMAGE=...
# EXTRAS: the Python extras installed; the default includes `dashboard` (Streamlit, about
# 100 MB of the venv's ~710 MB) so the example's dashboard runs from this image. An image
# that only runs the operator and stages can drop it: --build-arg EXTRAS=all.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG EXTRAS=all,dashboard
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/duckherd/venv
ENV PATH=/opt/duckherd/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so a code change does not re-download them.
COPY constraints.txt pyproject.toml README.md ./
RUN mkdir -p operator/duckherd jobs/duckherd_jobs \
 && touch operator/duckherd/__init__.py jobs/duckherd_jobs/__init__.py \
 && pip install -c constraints.txt ".[${EXTRAS}]" \
 && pip uninstall -y duckherd \
 && rm -rf build operator jobs ./*.egg-info
# (The stub's build/ must go: COPY keeps the sources' older mtimes, so setuptools would
# otherwise package the stub's empty __init__.py files in place of the real ones.)
COPY operator ./operator
COPY jobs ./jobs
RUN pip install --no-deps .
COPY dbt /opt/duckherd/dbt
COPY examples/customer-analytics/dashboard /opt/duckherd/dashboard
# Parse the default dbt project once, here: transform pods then start from the saved manifest
# (the fingerprint covers the project path, so this runs where the project finally lives).
RUN python -m duckherd_jobs.transform prepare /opt/duckherd/dbt
# Byte-compile everything now: the root filesystem is read-only in pods, so without this every
# stage pod would recompile dbt, GX, pyarrow... from source at each start. unchecked-hash pycs
# stay valid whatever the file times after COPY.
RUN find /opt/duckherd/venv /opt/duckherd/dashboard -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/duckherd/venv \
    /opt/duckherd/dashboard

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="duckherd" \
      org.opencontainers.image.description="Duckherd operator, pipeline stages and example dashboard (one image)" \
      org.opencontainers.image.licenses="Apache-2.0"
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
