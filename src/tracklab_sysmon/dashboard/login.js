// The login form posts the token in its body (never a URL); a refused one comes back as ?failed=1.
if (new URLSearchParams(location.search).has("failed")) {
  document.getElementById("login-error").hidden = false;
  history.replaceState(null, "", "/login");
}
