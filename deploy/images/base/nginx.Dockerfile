# Local stand-in for nginxinc/nginx-unprivileged: Debian's nginx run as uid 101 on :8080, every
# writable path under /tmp (the editor's nginx.conf replaces the configuration entirely).
ARG DEBIAN_IMAGE=localhost/amicable-base/debian:bookworm
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /etc/nginx/sites-enabled \
    && install -d -o 101 -g 101 /usr/share/nginx/html /var/log/nginx /var/lib/nginx \
    && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
USER 101:101
EXPOSE 8080
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
