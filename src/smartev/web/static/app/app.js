// The shell: login, navigation by role, and a tiny hash router. Pages live in owner.js and console.js;
// each route's render(main, params) may return a cleanup function run when the user leaves the page.
import { api, ApiError, setToken, token } from "./api.js";
import { h, notice } from "./ui.js";
import * as owner from "./owner.js";
import * as operator from "./console.js";

const routes = [];
let cleanup = null;
let shown = 0; // which navigation is current: a slow page must not outlive a newer one
export let me = null;

/** Register a page: pattern like "/cars/:vin/history". */
export function route(pattern, render, { staff = false, title = "" } = {}) {
  const names = [];
  const regex = new RegExp(
    "^" + pattern.replace(/:([a-z]+)/g, (_, n) => (names.push(n), "([^/]+)")) + "$",
  );
  routes.push({ regex, names, render, staff, title });
}

export function isStaff(user = me) {
  return !!user && (user.role === "operator" || user.role === "admin");
}

export function navigate(path) {
  if (location.hash !== `#${path}`) location.hash = path;
  else show();
}

function nav() {
  const links = [["#/cars", "My cars"]];
  if (isStaff()) {
    links.push(["#/fleet", "Fleet"], ["#/charging", "Charging"], ["#/sites", "Sites"], ["#/ingest", "Ingest health"]);
  } else {
    links.push(["#/home", "Home charging"]);
  }
  links.push(["#/settings", "Settings"]);
  const current = location.hash.split("/").slice(0, 2).join("/");
  return h(
    "nav",
    { "aria-label": "Main" },
    h("a", { class: "brand", href: "#/cars" }, "smartev"),
    h(
      "ul",
      {},
      links.map(([href, text]) =>
        h("li", {}, h("a", { href, "aria-current": current === href ? "page" : null }, text)),
      ),
    ),
    h("span", { class: "who" }, me ? `${me.email} (${me.role})` : ""),
    h("button", { type: "button", class: "secondary", onclick: logout }, "Log out"),
  );
}

function logout() {
  setToken(null);
  me = null;
  navigate("/login");
}

function loginPage(main) {
  const error = h("div", { "aria-live": "assertive" });
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    id: "password", name: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const form = h(
    "form",
    { class: "card login" },
    h("h1", {}, "Log in to smartev"),
    h("label", { for: "email" }, "Email"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    error,
    h("button", { type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.replaceChildren();
    try {
      const answer = await api("/api/v1/auth/token", {
        method: "POST",
        form: { username: email.value, password: password.value },
      });
      setToken(answer.access_token);
      me = null;
      navigate(isStaffAfterLogin(await loadMe()) ? "/fleet" : "/cars");
    } catch (err) {
      error.replaceChildren(notice(err instanceof ApiError ? err.message : String(err), "error"));
    }
  });
  main.replaceChildren(form);
  email.focus();
}

function isStaffAfterLogin(user) {
  return isStaff(user);
}

async function loadMe() {
  if (!token()) return null;
  try {
    me = await api("/api/v1/users/me");
  } catch {
    me = null;
  }
  return me;
}

async function show() {
  const mine = ++shown;
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.error(err);
    }
    cleanup = null;
  }
  const path = location.hash.replace(/^#/, "") || "/cars";
  const header = document.getElementById("top");
  const main = document.getElementById("main");
  if (path === "/login" || !(me || (await loadMe()))) {
    header.replaceChildren();
    document.title = "Log in · smartev";
    loginPage(main);
    return;
  }
  header.replaceChildren(nav());
  for (const r of routes) {
    const m = r.regex.exec(path);
    if (!m) continue;
    if (r.staff && !isStaff()) break;
    const params = Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
    main.replaceChildren(h("p", { role: "status" }, "Loading…"));
    document.title = `${r.title || "smartev"} · smartev`;
    let done = null;
    try {
      done = (await r.render(main, params)) || null;
    } catch (err) {
      if (mine === shown) main.replaceChildren(notice(err instanceof ApiError ? err.message : String(err), "error"));
    }
    if (mine !== shown) {
      if (done) done(); // the user has moved on while this page was loading
      return;
    }
    cleanup = done;
    main.focus({ preventScroll: true });
    return;
  }
  main.replaceChildren(h("h1", {}, "Not found"), notice(`There is no page ${path} for you here.`, "error"));
}

window.addEventListener("hashchange", show);
window.addEventListener("smartev:logged-out", () => {
  me = null;
  navigate("/login");
});
owner.register(route);
operator.register(route);
show();

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js").catch((err) => console.warn("service worker not registered", err));
}
