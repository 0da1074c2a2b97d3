"""Per-app databases through Hasura (seed guide §7, upstream §2.8 and §6).

The browser calls ``POST /db/apps/<app_id>/graphql`` on the agent; the agent checks the
Origin and ``x-amicable-app-key``, mints a short-lived HS256 JWT for the app's Hasura role
and forwards the query with root fields moved into the app's schema. Off unless
``HASURA_BASE_URL`` is set.
"""

from .config import HasuraConfig, JwtSecret, hasura_config_from_env, parse_jwt_secret
from .hasura import GraphqlReply, HasuraClient, open_hasura_client
from .inject import DB_JS_PATH, INDEX_HTML_PATH, db_js, parse_db_js, patch_index_html
from .jwt import InvalidJwt, decode_hs256, mint_hasura_jwt
from .origin import OriginPolicy, normalize_origin, preview_origin, store_origin_lookup
from .provisioning import AppCredentials, AppRecord, Provisioner
from .proxy import DbProxy, ProxyResponse, disabled_response
from .rewrite import rewrite_query_for_schema
from .service import AppDatabase, AppDbInfo, open_app_database
from .sql import app_schema_name
from .tools import DB_TOOL_NAMES, DESTRUCTIVE_DB_TOOLS, AppDbTools, DbToolResult

__all__ = [
    "DB_JS_PATH",
    "DB_TOOL_NAMES",
    "DESTRUCTIVE_DB_TOOLS",
    "INDEX_HTML_PATH",
    "AppCredentials",
    "AppDatabase",
    "AppDbInfo",
    "AppDbTools",
    "AppRecord",
    "DbProxy",
    "DbToolResult",
    "GraphqlReply",
    "HasuraClient",
    "HasuraConfig",
    "InvalidJwt",
    "JwtSecret",
    "OriginPolicy",
    "Provisioner",
    "ProxyResponse",
    "app_schema_name",
    "db_js",
    "decode_hs256",
    "disabled_response",
    "hasura_config_from_env",
    "mint_hasura_jwt",
    "normalize_origin",
    "open_app_database",
    "open_hasura_client",
    "parse_db_js",
    "parse_jwt_secret",
    "patch_index_html",
    "preview_origin",
    "rewrite_query_for_schema",
    "store_origin_lookup",
]
