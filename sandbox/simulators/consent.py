"""The sign-in and consent page the OAuth simulators show at their authorize endpoint.

One accessible form (labelled inputs, fieldsets with legends, an alert for errors) with the
``data-testid`` hooks browser tests drive: ``consent-username``, ``consent-password``, one
``consent-organisation`` per organisation (radio buttons when the ledger connects exactly one
organisation, checkboxes when it may connect several), ``consent-submit`` and ``consent-cancel``.
Each simulator brings its own wording; the Xero simulator keeps its own copy of this page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Response, render_template_string

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


__all__ = ["OrganisationChoice", "authorize_error_page", "consent_page", "redirect_to"]
