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
// - When an update fails (an error answer, no answer) or the stream is lost, a message above the list
//   says so (a status region, announced politely) and the page tries again, waiting longer each time
//   (1 s doubling to 30 s); the message goes once an update succeeds again.
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
  for (const row of changed) { // the list is in order: a binary search finds the first card after the row
    const cards = list.children;
    let low = 0;
    let high = cards.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (later(cards[mid], row) > 0) high = mid; else low = mid + 1;
    }
    list.insertBefore(row, cards[low] || null);
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

// The status region that says live updates have stopped (empty while they work). It is in the page
// from the start, so that a screen reader announces what is later put in it.
function statusRegion() {
  const region = document.createElement("div");
  region.setAttribute("role", "status");
  region.setAttribute("aria-live", "polite");
  region.dataset.liveStatus = "";
  box.before(region);
  return region;
}

function showStopped(region) {
  if (region.firstChild) return;
  const callout = document.createElement("div");
  callout.className = "nhsuk-warning-callout";
  const label = document.createElement("p");
  label.className = "nhsuk-warning-callout__label";
  label.textContent = "Live updates have stopped";
  const text = document.createElement("p");
  text.textContent = "New notices may not appear on this page until they resume. SafeFlag keeps trying; "
    + "reloading the page shows your notices as they are now.";
  callout.append(label, text);
  region.appendChild(callout);
}

if (box) {
  const region = statusRegion();
  const FIRST_WAIT_MS = 1000;
  const LONGEST_WAIT_MS = 30000;
  let wait = FIRST_WAIT_MS;
  const retries = new Map(); // what failed (refresh, connect) -> the timer of its next attempt
  let fetching = null;
  let again = false;
  let events = null;
  const failed = (next) => {
    showStopped(region);
    box.dataset.liveFailed = "true";
    if (!retries.has(next)) {
      retries.set(next, setTimeout(() => { retries.delete(next); next(); }, wait));
      wait = Math.min(wait * 2, LONGEST_WAIT_MS);
    }
  };
  const resumed = () => {
    wait = FIRST_WAIT_MS;
    region.replaceChildren();
    delete box.dataset.liveFailed;
  };
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
          if (events && events.readyState === EventSource.OPEN) resumed();
        } else if (answer.status === 401) {
          window.location.reload();
        } else {
          failed(refresh);
        }
      })
      .catch(() => failed(refresh))
      .finally(() => {
        fetching = null;
        if (again) { again = false; refresh(); }
      });
  };
  const connect = () => {
    events = new EventSource(`/app/events?since=${encodeURIComponent(box.dataset.event || "")}`);
    events.addEventListener("changed", () => { box.dataset.connected = "true"; refresh(); });
    events.addEventListener("ready", () => { box.dataset.connected = "true"; resumed(); });
    events.addEventListener("error", () => {
      // lost: the browser reconnects by itself (and the server then says `changed`, so the page catches
      // up); refused (an error answer): it gives up, so a new stream is opened after a wait
      if (events.readyState === EventSource.CLOSED) {
        refresh(); // an update tells a signed-out page (timed out) to go to the sign-in page
        failed(connect);
      } else {
        showStopped(region);
        box.dataset.liveFailed = "true";
      }
    });
  };
  connect();
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
