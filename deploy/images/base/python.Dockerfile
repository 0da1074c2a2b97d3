# Local stand-in for python:3.11-slim-bookworm: Debian's python3.11 on the local Debian base,
# with python/python3 on PATH as in the official image. Only `make images` on a machine without
# a registry uses it (see deploy/images/README.md).
ARG DEBIAN_IMAGE=localhost/amicable-base/debian:bookworm
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 libpython3.11-stdlib \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && ln -s /usr/bin/python3.11 /usr/local/bin/python3 \
    && ln -s /usr/bin/python3.11 /usr/local/bin/python \
    && python3 --version
CMD ["python3"]
