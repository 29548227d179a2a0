# The retailflow image: `retailflow worker`, `retailflow api`, `retailflow migrate` (see docker-compose.yml).
FROM python:3.11-slim

COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
# UV_COMPILE_BYTECODE: every sync below leaves .pyc for the whole venv, the project's own wheel included (the
# workflow sandbox imports workflow modules afresh for each new run: from .pyc, not compiled again; issue 19)
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1
WORKDIR /app

# dependencies first (cached while only the code changes), exactly as locked, without the dev group
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# every package of the wheel (pyproject.toml), bottom layer first
COPY domain ./domain
COPY config ./config
COPY persistence ./persistence
COPY adapters ./adapters
COPY client ./client
COPY activities ./activities
COPY workflows ./workflows
COPY worker ./worker
COPY starters ./starters
COPY devtools ./devtools
COPY bench ./bench
RUN uv sync --frozen --no-dev --no-editable

RUN useradd --system --uid 10001 retailflow
USER retailflow
ENV PATH=/app/.venv/bin:$PATH
CMD ["retailflow", "worker"]
