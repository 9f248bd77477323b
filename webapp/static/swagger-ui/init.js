// The API docs page (/api/docs): Swagger UI 5.36.0 vendored from npm (swagger-ui-dist), started from a file
// rather than an inline script so the page keeps the site's Content-Security-Policy. "Authorize" takes an
// access token from POST /api/auth/login; persistAuthorization keeps it across reloads of this page.
window.addEventListener("load", function () {
  "use strict";
  window.ui = window.SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
