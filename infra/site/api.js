// The ledgerlink REST API, as the page uses it. Errors always arrive as
// {"error": {"code", "message", "field"?}}; they become ApiError.

export class ApiError extends Error {
  constructor(status, code, message, field = null, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

export class Api {
  constructor(baseUrl, tokenProvider, onUnauthenticated) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.tokenProvider = tokenProvider;
    this.onUnauthenticated = onUnauthenticated;
  }

  async request(method, path, { query, body } = {}) {
    const url = new URL(this.baseUrl + path, window.location.href);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
    }
    const headers = { Accept: "application/json" };
    const token = this.tokenProvider();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit",
      });
    } catch (error) {
      throw new ApiError(0, "network", "ledgerlink could not be reached. Check your connection and try again.");
    }
    const text = await response.text();
    let payload = null;
    if (text) {
      try { payload = JSON.parse(text); } catch { payload = null; }
    }
    if (!response.ok) {
      const detail = (payload && payload.error) || {};
      const error = new ApiError(
        response.status,
        detail.code || `http_${response.status}`,
        detail.message || `The request failed (${response.status}).`,
        detail.field || null,
        detail.details || null,
      );
      if (response.status === 401 && this.onUnauthenticated) this.onUnauthenticated(error);
      throw error;
    }
    return payload;
  }

  get(path, query) { return this.request("GET", path, { query }); }
  post(path, body = {}) { return this.request("POST", path, { body }); }
  put(path, body) { return this.request("PUT", path, { body }); }
  patch(path, body) { return this.request("PATCH", path, { body }); }
  delete(path, query) { return this.request("DELETE", path, { query }); }
}
