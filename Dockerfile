# satchel serve: the Composer repository mirror. Configuration comes from the environment
# (the env contract in README.md plus the SATCHEL_* variables of `satchel serve`); on EKS,
# IRSA injects the credentials. Nothing is written inside the image at run time except
# under /tmp (MIRROR_*_CACHE_DIR when set, and dist downloads larger than 1 MiB on their
# way to the bucket).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what `pip install .` needs (see .dockerignore).
COPY pyproject.toml README.md ./
COPY runtime ./runtime
RUN pip install . \
    && rm -rf /src \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin satchel

WORKDIR /tmp
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SATCHEL_PORT', '8080'), timeout=2)"]
# `satchel serve --host 0.0.0.0`; a Deployment's `args` (infra's AppDeployment) replace CMD.
ENTRYPOINT ["satchel"]
CMD ["serve", "--host", "0.0.0.0"]
