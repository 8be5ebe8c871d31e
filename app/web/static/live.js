// Live notice lists and acknowledgement without a reload (a module: the Content-Security-Policy allows no
// inline script). The pages work without it: lists are server-rendered, forms post and redirect.
//
// - A list marked `data-live="<url>"` listens to /app/events (server-sent events carrying event numbers
//   only). On each `changed` event it fetches its list again (an ordinary, audited page view) and puts
//   the count of notices in the tab title. The browser's EventSource reconnects by itself after a lost
//   connection or a server restart and sends the last event number, so the server tells it at once
//   when it missed something. `data-event` is the number the page was rendered at: nothing committed
//   between the render and the stream's start is missed either.
// - A form marked `data-acknowledge` is posted with fetch; on success the notice is shown as
//   acknowledged where the form was (focus moves to that message), otherwise the form posts normally.

const box = document.querySelector("[data-live]");

function setTitle(count) {
  const base = box.dataset.title;
  const rest = document.title.includes(" - ") ? document.title.slice(document.title.lastIndexOf(" - ")) : "";
  document.title = (count > 0 ? `(${count}) ` : "") + base + rest;
}

if (box) {
  let fetching = null;
  let again = false;
  const refresh = async () => {
    if (fetching) { again = true; return; }
    fetching = fetch(box.dataset.live, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(async (answer) => {
        if (answer.ok) {
          box.innerHTML = await answer.text();
          const list = box.querySelector("[data-count]");
          setTitle(list ? Number(list.dataset.count) : 0);
          box.dataset.refreshed = String(Number(box.dataset.refreshed || "0") + 1);
        } else if (answer.redirected || answer.status === 401) {
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
  events.addEventListener("changed", refresh);
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
