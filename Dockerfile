# The lab's app image for docker-compose.yml's `scale` profile: every framework and server of
# lab/matrix.toml in one image; the pair is chosen at run time (LAB_FRAMEWORK, LAB_SERVER).
# Installed editable so lab.matrix.REPO_ROOT is /lab, where `impls.<fw>.app:app` is imported
# from, exactly as in a checkout. No embedded services: compose provides PostgreSQL and Redis.
FROM python:3.11-slim-bookworm
WORKDIR /lab
COPY pyproject.toml README.md ./
COPY common common
COPY lab lab
COPY bench bench
COPY impls impls
RUN pip install --no-cache-dir -e ".[fastapi,litestar,aiohttp,flask,uvicorn,hypercorn,granian,gunicorn]"
ENV PYTHONUNBUFFERED=1
