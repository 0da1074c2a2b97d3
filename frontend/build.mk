# Included by the root Makefile as `make -C frontend -f build.mk dist`: build the editor into
# dist/ only when its sources changed (dist/.stamp is newer than every input).
SOURCES := $(shell find src public -type f 2>/dev/null) index.html package.json package-lock.json \
           tsconfig.json vite.config.ts $(wildcard .env .env.production)

.PHONY: dist
dist: dist/.stamp

dist/.stamp: $(SOURCES)
	npm run --silent build
	@touch $@
