# One image for the Python parts of the stack: serving, log_processor and the one-shot jobs
# (Elasticsearch setup, Kibana saved-objects import). Build context: the repository root.
#
# The model, its reference window and the Feast online store are built into the image by
# `python -m serving.bootstrap` (deterministic, seeded), so serving and log_processor start from
# the very same artifacts and a container restart never retrains.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 app
WORKDIR /app

# Only what the services need; var/, .venv/ and local data never enter the image.
COPY pyproject.toml README.md ./
COPY common/ common/
COPY serving/ serving/
COPY log_processor/ log_processor/
COPY demo/ demo/
COPY benchmarks/ benchmarks/
COPY elasticsearch/ elasticsearch/
COPY kibana/ kibana/
COPY docker/ docker/
RUN pip install --editable . \
 && rm -rf serving/feature_repo/data var

RUN python -m serving.bootstrap \
 && chown -R app:app /app/var

USER app
EXPOSE 8000 8309
CMD ["python", "-m", "serving"]
