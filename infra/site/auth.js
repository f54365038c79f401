// Sign-in. Locally ("dev"): /app/dev-login mints a development token and hands it back in the URL
// fragment. In AWS ("cognito"): Cognito's hosted sign-in, authorization code with PKCE, and the
// ID token (it carries custom:business_id and custom:role) sent to the API.

const TOKEN_KEY = "ledgerlink.id_token";
const PKCE_KEY = "ledgerlink.pkce";

export function decodeClaims(token) {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const padded = payload + "=".repeat((4 - (payload.length % 4)) % 4);
    const json = decodeURIComponent(Array.from(atob(padded), (c) =>
      `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

function base64Url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function randomString(length = 48) {
  return base64Url(crypto.getRandomValues(new Uint8Array(length)));
}

export class Auth {
  constructor(config) {
    this.config = config.auth || { mode: "dev" };
  }

  get token() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return null;
    const claims = decodeClaims(token);
    if (!claims || (claims.exp && claims.exp * 1000 < Date.now() + 30_000)) {
      sessionStorage.removeItem(TOKEN_KEY);
      return null;
    }
    return token;
  }

  get user() {
    const token = this.token;
    if (!token) return null;
    const claims = decodeClaims(token);
    const claim = (name) => claims[name] ?? claims[`custom:${name}`];
    return {
      id: claims.sub,
      email: claims.email || claims.sub,
      businessId: claim("business_id"),
      role: claim("role") === "admin" ? "admin" : "standard",
      get isAdmin() { return this.role === "admin"; },
    };
  }

  // Picks up a sign-in that just came back to the page; true when the URL was tidied.
  async completeSignIn() {
    const hash = window.location.hash;
    if (hash.startsWith("#id_token=")) {
      const token = decodeURIComponent(hash.slice("#id_token=".length));
      if (decodeClaims(token)) sessionStorage.setItem(TOKEN_KEY, token);
      history.replaceState(null, "", window.location.pathname + window.location.search + "#/connections");
      return true;
    }
    const params = new URLSearchParams(window.location.search);
    if (this.config.mode === "cognito" && params.has("code") && params.has("state") && !params.has("flow")) {
      const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
      sessionStorage.removeItem(PKCE_KEY);
      history.replaceState(null, "", window.location.pathname + "#/connections");
      if (!saved || saved.state !== params.get("state")) throw new Error("The sign-in could not be verified: start again.");
      const response = await fetch(`${this.config.domain}/oauth2/token`, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code",
          client_id: this.config.client_id,
          code: params.get("code"),
          redirect_uri: this.config.redirect_uri,
          code_verifier: saved.verifier,
        }),
      });
      if (!response.ok) throw new Error("The sign-in could not be completed: start again.");
      const tokens = await response.json();
      sessionStorage.setItem(TOKEN_KEY, tokens.id_token);
      return true;
    }
    return false;
  }

  async signIn() {
    if (this.config.mode !== "cognito") return;
    const verifier = randomString();
    const state = randomString(24);
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state }));
    const url = new URL(`${this.config.domain}/oauth2/authorize`);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: this.config.client_id,
      redirect_uri: this.config.redirect_uri,
      scope: (this.config.scopes || ["openid", "email"]).join(" "),
      state,
      code_challenge: base64Url(digest),
      code_challenge_method: "S256",
    }).toString();
    window.location.assign(url.toString());
  }

  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    if (this.config.mode === "cognito") {
      const url = new URL(`${this.config.domain}/logout`);
      url.search = new URLSearchParams({ client_id: this.config.client_id, logout_uri: this.config.redirect_uri }).toString();
      window.location.assign(url.toString());
    } else {
      window.location.assign(window.location.pathname);
    }
  }
}
