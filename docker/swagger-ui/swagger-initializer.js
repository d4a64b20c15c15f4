// Swagger UI (npm swagger-ui-dist) on golden360's API, as Caddy serves it
// without Docker (docker/Caddyfile): the OpenAPI description is fetched
// from the same origin at /openapi, which Caddy passes to PostgREST's "/".
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
};
