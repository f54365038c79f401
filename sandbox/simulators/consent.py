"""The authorize endpoint the OAuth simulators share: its sign-in and consent page and its steps.

One accessible form (labelled inputs, fieldsets with legends, an alert for errors) with the
``data-testid`` hooks browser tests drive: ``consent-username``, ``consent-password``, one
``consent-organisation`` per organisation (radio buttons when the ledger connects exactly one
organisation, checkboxes when it may connect several), ``consent-submit`` and ``consent-cancel``.
Each simulator brings its own wording. The readers of the posted form (``posted_*``,
``consent_cancelled``) live here with the page that names its fields, and so does
:func:`read_authorize_request`, the checks every authorize endpoint starts with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Response, render_template_string, request

from sandbox.simulators.harness import AppRegistry, RegisteredApp, SandboxUser, UserDirectory

_CONSENT_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ brand }} (sandbox) - connect {{ app_name }}</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 34rem; margin: 2rem auto; padding: 0 1rem; }
  fieldset { border: 1px solid #ccd; border-radius: .4rem; margin: 1rem 0; padding: .75rem 1rem; }
  label { display: inline-block; margin: .25rem 0; }
  input[type=email], input[type=password] { display: block; width: 100%; padding: .4rem; }
  .error { color: #a00; font-weight: 600; }
  button { padding: .5rem 1rem; margin-right: .5rem; }
</style>
</head>
<body>
<main>
  <h1>Connect {{ app_name }} to {{ brand }}</h1>
  <p>This is the ledgerlink {{ brand }} simulator. {{ app_name }} is asking to:</p>
  <ul>{% for line in scope_lines %}<li>{{ line }}</li>{% endfor %}</ul>
  {% if error %}<p class="error" role="alert" data-testid="consent-error">{{ error }}</p>{% endif %}
  <form method="post" action="{{ action }}">
    {% for name, value in hidden %}<input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor %}
    <fieldset>
      <legend>Sign in</legend>
      <label for="consent-username">Email address</label>
      <input id="consent-username" name="username" type="email" autocomplete="username" required
             value="{{ username }}" data-testid="consent-username">
      <label for="consent-password">Password</label>
      <input id="consent-password" name="password" type="password" autocomplete="current-password" required
             data-testid="consent-password">
    </fieldset>
    <fieldset>
      <legend>{{ organisation_legend }}</legend>
      {% for org in organisations %}
      <div>
        <input type="{{ 'checkbox' if multiple else 'radio' }}" id="consent-org-{{ loop.index }}"
               name="organisation" value="{{ org.id }}" data-testid="consent-organisation"
               data-organisation-name="{{ org.name }}"{% if not multiple %} required{% endif %}
               {% if org.checked %}checked{% endif %}>
        <label for="consent-org-{{ loop.index }}">{{ org.name }}</label>
      </div>
      {% endfor %}
    </fieldset>
    <button type="submit" name="action" value="allow" data-testid="consent-submit">Allow access</button>
    <button type="submit" name="action" value="cancel" formnovalidate data-testid="consent-cancel">Cancel</button>
  </form>
</main>
</body>
</html>
"""

_ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ brand }} (sandbox) - error</title></head>
<body><main><h1>Sorry, something went wrong</h1>
<p role="alert" data-testid="authorize-error"><strong>{{ error }}</strong>: {{ description }}</p>
</main></body></html>
"""


@dataclass(frozen=True)
class OrganisationChoice:
    id: str
    name: str
    checked: bool = False


def consent_page(
    *,
    brand: str,
    app_name: str,
    scope_lines: Sequence[str],
    action: str,
    hidden: Mapping[str, str | None],
    organisations: Sequence[OrganisationChoice],
    organisation_legend: str,
    multiple: bool,
    username: str = "",
    error: str | None = None,
) -> Response:
    """The page; 200 when first shown, 400 when re-shown with an error (as a form post fails)."""
    html = render_template_string(
        _CONSENT_PAGE, brand=brand, app_name=app_name, scope_lines=list(scope_lines), error=error,
        action=action, hidden=[(name, value) for name, value in hidden.items() if value is not None],
        username=username, organisations=list(organisations), organisation_legend=organisation_legend,
        multiple=multiple,
    )
    return Response(html, status=200 if error is None else 400, content_type="text/html; charset=utf-8")


def authorize_error_page(brand: str, error: str, description: str) -> Response:
    """Shown instead of redirecting when the client or its redirect URI cannot be trusted."""
    html = render_template_string(_ERROR_PAGE, brand=brand, error=error, description=description)
    return Response(html, status=400, content_type="text/html; charset=utf-8")


def redirect_to(redirect_uri: str, query: Mapping[str, str]) -> Response:
    """A 302 back to the client with ``query`` appended to whatever query it already has."""
    separator = "&" if "?" in redirect_uri else "?"
    return Response(status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(dict(query))}"})


@dataclass(frozen=True)
class AuthorizeRequest:
    """An authorize request from a known app to one of its own redirect URIs: from here on, an
    error goes back to the client (RFC 6749 §4.1.2.1) instead of onto an error page."""

    params: Mapping[str, str | None]
    app: RegisteredApp
    redirect_uri: str

    def back(self, query: Mapping[str, str]) -> Response:
        """To the client with ``query`` and, last, the request's ``state``."""
        state = self.params["state"]
        return redirect_to(self.redirect_uri, {**query, **({"state": state} if state is not None else {})})

    def back_with_error(self, error: str, description: str | None = None) -> Response:
        return self.back({"error": error, **({"error_description": description} if description else {})})


def read_authorize_request(apps: AppRegistry, names: Sequence[str], brand: str, *,
                           unknown_client: tuple[str, str], bad_redirect: tuple[str, str]
                           ) -> AuthorizeRequest | Response:
    """The authorize request's parameters (``names``, from the query or the posted form), checked.

    An unknown ``client_id`` or a redirect URI its app did not register gets ``brand``'s error
    page with ``unknown_client`` or ``bad_redirect`` (error, description), never a redirect to a
    URI nobody vouches for; a ``response_type`` other than ``code`` goes back to the client.
    """
    params = {name: request.values.get(name) for name in names}
    app = apps.get(params["client_id"])
    if app is None:
        return authorize_error_page(brand, *unknown_client)
    redirect_uri = params["redirect_uri"]
    if redirect_uri is None or not app.accepts_redirect(redirect_uri):
        return authorize_error_page(brand, *bad_redirect)
    authorize = AuthorizeRequest(params, app, redirect_uri)
    if params["response_type"] != "code":
        return authorize.back_with_error("unsupported_response_type")
    return authorize


def consent_cancelled() -> bool:
    """Whether the user pressed Cancel on the posted page."""
    return request.form.get("action") == "cancel"


def posted_user(users: UserDirectory) -> SandboxUser | None:
    """The user the posted sign-in form names, if the password is right."""
    return users.authenticate(request.form.get("username"), request.form.get("password"))


def posted_username() -> str:
    """The email address typed into the posted form (shown again with an error), or ``""``."""
    return request.form.get("username", "") if request.method == "POST" else ""


def posted_organisations(default: Iterable[str] = ()) -> set[str]:
    """The organisations chosen on the posted form (kept chosen when it is shown again), or
    ``default`` when the page is first shown."""
    return set(request.form.getlist("organisation")) if request.method == "POST" else set(default)


__all__ = ["AuthorizeRequest", "OrganisationChoice", "authorize_error_page", "consent_cancelled", "consent_page",
           "posted_organisations", "posted_user", "posted_username", "read_authorize_request", "redirect_to"]
