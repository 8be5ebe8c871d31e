// Live notice lists and acknowledgement without a reload (a module: the Content-Security-Policy allows no
// inline script). The pages work without it: lists are server-rendered, forms post and redirect.
//
// - A list marked `data-live="<url>"` listens to /app/events (server-sent events for the signed-in user
//   alone, carrying sealed positions only). On each `changed` event it fetches its list again (an
//   ordinary, audited page view): what changed since the list's position (`data-event`, moved on by
//   each answer's `SafeFlag-Event` header), put in place, and the count of notices in the tab title. A
//   page far behind gets its changes in bounded pages (`SafeFlag-More`: ask again from the new position). The browser's
//   EventSource reconnects by itself after a lost connection or a server restart and sends the last id;
//   the server then answers `changed` at once, so the page catches up. `data-event` is the position the
//   page was rendered at: the first connection sends it, so nothing committed meanwhile is missed.
// - A form marked `data-acknowledge` is posted with fetch; on success the notice is shown as
//   acknowledged where the form was (focus moves to that message), otherwise the form posts normally.

const box = document.querySelector("[data-live]");

function setTitle(count) {
  const base = box.dataset.title;
  const rest = document.title.includes(" - ") ? document.title.slice(document.title.lastIndexOf(" - ")) : "";
  document.title = (count > 0 ? `(${count}) ` : "") + base + rest;
}

// A live update's answer: either the whole list (no position the server could use) or what changed
// (`ul[data-delta]`: rows to put in place, urgent first then newest, and `data-gone` ids to remove).
function apply(html) {
  const answer = document.createElement("template");
  answer.innerHTML = html;
  const delta = answer.content.querySelector("[data-delta]");
  if (!delta) {
    box.replaceChildren(answer.content);
    return;
  }
  let list = box.querySelector("ul[data-count]");
  const changed = [...delta.querySelectorAll("li[data-task]")];
  const gone = new Set((delta.dataset.gone || "").split(" ").filter(Boolean));
  for (const row of changed) gone.add(row.dataset.task);
  if (list) for (const row of [...list.children]) if (gone.has(row.dataset.task)) row.remove();
  if (changed.length && !list) {
    for (const empty of box.querySelectorAll("[data-empty]")) empty.remove();
    list = document.createElement("ul");
    list.className = "nhsuk-list notice-list";
    box.appendChild(list);
  }
  const key = (row) => (row.dataset.order || "0 0").split(" ").map(Number);
  const later = (a, b) => { const [ua, sa] = key(a); const [ub, sb] = key(b); return ub - ua || sb - sa; };
  for (const row of changed) {
    const next = [...list.children].find((other) => later(other, row) > 0);
    list.insertBefore(row, next || null);
  }
  if (list && !list.children.length) {
    list.remove();
    const empty = document.createElement("p");
    empty.className = "nhsuk-body";
    empty.dataset.empty = "";
    empty.textContent = "No open notices.";
    box.appendChild(empty);
  } else if (list) {
    list.dataset.count = String(list.children.length);
  }
}

if (box) {
  let fetching = null;
  let again = false;
  const refresh = async () => {
    if (fetching) { again = true; return; }
    const url = `${box.dataset.live}?since=${encodeURIComponent(box.dataset.event || "")}`;
    fetching = fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(async (answer) => {
        if (answer.redirected) {
          window.location.assign(answer.url); // signed out (timed out): the sign-in page says why
        } else if (answer.ok) {
          apply(await answer.text());
          box.dataset.event = answer.headers.get("SafeFlag-Event") || "";
          if (answer.headers.get("SafeFlag-More")) again = true; // far behind: the next changes, from here
          const list = box.querySelector("[data-count]");
          setTitle(list ? Number(list.dataset.count) : 0);
          box.dataset.refreshed = String(Number(box.dataset.refreshed || "0") + 1);
        } else if (answer.status === 401) {
          window.location.reload();
        }
      })
      .catch(() => {})
      .finally(() => {
        fetching = null;
        if (again) { again = false; refresh(); }
      });
  };
  const events = new EventSource(`/app/events?since=${encodeURIComponent(box.dataset.event || "")}`);
  events.addEventListener("changed", () => { box.dataset.connected = "true"; refresh(); });
  events.addEventListener("ready", () => { box.dataset.connected = "true"; });
}

for (const form of document.querySelectorAll("form[data-acknowledge]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const answer = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      });
      if (answer.status === 204) {
        const done = document.createElement("div");
        done.className = "nhsuk-inset-text";
        done.setAttribute("role", "status");
        done.setAttribute("tabindex", "-1");
        done.dataset.acknowledged = "true";
        const text = document.createElement("p");
        text.textContent = "Acknowledged. This notice has left your list.";
        done.appendChild(text);
        form.replaceWith(done);
        done.focus();
        return;
      }
    } catch (_error) {
      // fall through to the ordinary post, which shows the server's answer
    }
    form.submit();
  });
}
