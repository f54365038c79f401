"""authlib's httpx OAuth2 client, imported without its "use httpx2" deprecation warning.

We keep httpx on purpose (DESIGN §4: httpx2 would escape the transports our tests inject), so the
warning is noise on every cold start. authlib installs an "always" filter for its warnings when
its deprecate module loads, so our filter is added after that, in front of it.
"""

import warnings

import authlib.deprecate  # noqa: F401

warnings.filterwarnings("ignore", message="The httpx module is deprecated")

from authlib.integrations.httpx_client import OAuth2Client, OAuthError  # noqa: E402

__all__ = ["OAuth2Client", "OAuthError"]
