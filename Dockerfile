# One image for the operator, every stage pod and the example's dashboard.
# BASE_IMAGE must provide python3 (3.11), pip and venv; where no registry is reachable, build
# a local base (hack/cluster builds one with debootstrap) and pass --build-arg BASE_IMAGE=...
# EXTRAS: the Python extras installed; the default includes `dashboard` (Streamlit, about
# 100 MB of the venv's ~710 MB) so the example's dashboard runs from this image. An image
# that only runs the operator and stages can drop it: --build-arg EXTRAS=all.
#
# Layers, from the least to the most often changed: the dependencies (from pyproject.toml and
# constraints.txt only), then duckherd's own code, then the default dbt project: a code change
# rebuilds only the last few layers. One stage: the dependency layers are ancestors of the
# tagged image, so pruning dangling images (hack/cluster does after each build) keeps them.
#
# Pods run with a read-only root filesystem, so everything is byte-compiled at build time
# (otherwise every stage pod would recompile dbt, GX, pyarrow... at each start); unchecked-hash
# pycs stay valid whatever the file times after COPY.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG EXTRAS=all,dashboard
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
WORKDIR /src
COPY constraints.txt pyproject.toml ./
# Every pinned dependency of duckherd[EXTRAS], resolved through an empty stub of the project (its
# README.md is only metadata), which is then uninstalled; then all of it byte-compiled.
RUN export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
 && python3 -m venv /opt/duckherd/venv \
 && mkdir -p operator/duckherd jobs/duckherd_jobs \
 && touch README.md operator/duckherd/__init__.py jobs/duckherd_jobs/__init__.py \
 && pip install --no-compile -c constraints.txt ".[${EXTRAS}]" \
 && pip uninstall -y duckherd \
 && rm -rf /src/* \
 && python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/duckherd/venv
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY jobs ./jobs
# Only the files this install adds are compiled here (whatever packages the project has;
# -I: the metadata of the installed distribution, not of the build tree in the cwd).
RUN PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 pip install --no-deps --no-compile . \
 && python -I -c "import compileall, py_compile, sys; from importlib.metadata import files; \
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH; \
ours = [str(f.locate()) for f in files('duckherd') or [] if f.suffix == '.py']; \
ok = ours and all(compileall.compile_file(f, quiet=1, force=True, invalidation_mode=mode) for f in ours); \
sys.exit(not ok)" \
 && rm -rf /src/*
COPY examples/customer-analytics/dashboard /opt/duckherd/dashboard
RUN python -m compileall -q -f --invalidation-mode unchecked-hash /opt/duckherd/dashboard
COPY dbt /opt/duckherd/dbt
# Parse the default dbt project once, here: transform pods then start from the saved manifest
# (the fingerprint covers the project path, so this runs where the project finally lives).
RUN python -m duckherd_jobs.transform prepare /opt/duckherd/dbt
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["duckherd"]
CMD ["--help"]
