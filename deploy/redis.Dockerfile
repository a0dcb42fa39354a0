# Redis from Debian's package on a locally built base (deploy/base-image --with-redis),
# for hosts that cannot pull the redis image: REDIS_IMAGE=TAG docker compose up.
ARG BASE_IMAGE=thaw-python:bookworm
FROM ${BASE_IMAGE}

# A fixed uid for the user the package would create, so USER can name it by number.
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /var/lib/redis --shell /usr/sbin/nologin redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server=5:7.* \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data

COPY redis-entrypoint /usr/local/bin/redis-entrypoint

USER 999:999
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]
CMD ["redis-server"]
