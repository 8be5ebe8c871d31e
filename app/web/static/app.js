// SafeFlag's one script (a module; the Content-Security-Policy allows no inline script): marks the page
// as running JavaScript, as NHS.UK frontend's styles expect, and starts its components.
// live.js is our own file and is imported statically; the NHS.UK frontend's script is fetched by the build
// (app/web/assets.py) and imported on its own: were it missing or refused, a static import would stop this
// module before live.js ran, and the page would lose its live updates with its components.
import "./continue.js"; // signing out goes on to the identity provider
import "./live.js"; // live notice lists and acknowledgement without a reload (pages marked for it)

document.body.classList.add("js-enabled", "nhsuk-frontend-supported");
import("./vendor/nhsuk-frontend.min.js")
  .then(({ initAll }) => initAll())
  .catch((error) => console.error("NHS.UK frontend components not started:", error));
