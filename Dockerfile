# One image for every role (worker, webhook, Flower); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# Dependencies from the lock file only: exact versions, every file checked against its
# sha256 (pip's hash-checking mode). Regenerate with `make lock` after changing pyproject.toml.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
# The four installed packages only: crmsim/ and localredis/ are development tools.
COPY contact_lookup contact_lookup
COPY worker worker
COPY tasks tasks
COPY producers producers
COPY examples examples
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
# Never root: a compromised CRM response or webhook body gets no more than this user.
USER app
ENV CONTACT_LOOKUP_CONFIG=/app/examples/contact-lookup.toml
CMD ["contact-lookup", "worker"]
