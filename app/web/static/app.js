// SafeFlag's one script (a module; the Content-Security-Policy allows no inline script): marks the page
// as running JavaScript, as NHS.UK frontend's styles expect, and starts its components.
import { initAll } from "./vendor/nhsuk-frontend.min.js";
import "./live.js"; // live notice lists and acknowledgement without a reload (pages marked for it)

document.body.classList.add("js-enabled", "nhsuk-frontend-supported");
initAll();
