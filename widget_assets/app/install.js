// Live Operator Chat, operator inbox: Admin → Install (issue 18). Each site's embed snippet,
// the one line a website needs (README, "Embedding the chat widget"), ready to copy.

import { api } from "./api.js";
import { copyButton, h } from "./dom.js";

/** The ``<script>`` tag of ``widget.js`` for one site of the account, on this server. */
export function snippet(accountId, siteId) {
  const src = new URL("/widget.js", location.origin).href;
  return `<script src="${src}" data-account="${accountId}" data-site="${siteId}" async></script>`;
}

export async function showInstall(ctx, body) {
  let account;
  let sites;
  try {
    [{ account_id: account }, { sites }] = await Promise.all([
      api("GET", "operator/me"),
      api("GET", "operator/sites"),
    ]);
  } catch (error) {
    body.replaceChildren(h("p", { class: "form-error", role: "alert" }, error.message));
    return;
  }
  body.replaceChildren(
    h("h2", { class: "admin__title" }, "Install the chat widget"),
    h("p", {}, "Paste the line of a site into every page of that website, before </body>."),
    ...sites.map((site) => {
      const code = snippet(account, site.id);
      const id = `install-${site.id}`;
      return h("section", { class: "install", "aria-labelledby": `${id}-title` },
        h("h3", { class: "install__title", id: `${id}-title` }, site.name),
        h("pre", { class: "install__code", id }, h("code", {}, code)),
        copyButton(`Copy snippet for ${site.name}`, () => code, "Copy"));
    }),
  );
}
