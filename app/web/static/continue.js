// The signing-out page's form goes on to the identity provider's own sign-out by itself (without
// JavaScript the person presses Continue): a form post, as the ID token it carries names the person.
for (const form of document.querySelectorAll("form[data-auto-submit]")) {
  form.submit();
}
