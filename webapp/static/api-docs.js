// Starts Swagger UI on /api/docs (a file, not an inline script, so the app's Content-Security-Policy allows it).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({ url: root.dataset.url, dom_id: "#swagger-ui", deepLinking: true });
});
