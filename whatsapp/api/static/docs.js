// Starts Swagger UI on /api/whatsapp/docs. A file, not an inline script: the page's CSP
// allows scripts from 'self' only. The document is fetched with the browser's credentials
// (the Basic auth it asked for), so "Try it out" works without entering the key again.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    // Next to this page, without the user:password a URL may carry (fetch refuses such URLs;
    // the browser sends the credentials it was given anyway).
    url: new URL("openapi.json", location.origin + location.pathname).href,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",         // no top bar: it would let the page load other documents
    deepLinking: true,
    validatorUrl: null,           // the default badge calls validator.swagger.io: nothing external
    tryItOutEnabled: false,
    defaultModelsExpandDepth: 1,
  });
});
