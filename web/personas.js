// How each mentor looks: the catalog (/v1/personas) gives names and roles; colours are the
// page's own. A persona the page does not know gets a stable colour from its id.

const COLOURS = { lua: "#c2416b", elro: "#2563a8", riri: "#0f7a5a", nana: "#a15c07" };

let catalog = new Map();

export function setCatalog(personas) {
  catalog = new Map(personas.map((p) => [p.id, p]));
}

export function persona(id) {
  return catalog.get(id) || { id, name: id || "?", name_ko: "", role: "" };
}

export function colour(id) {
  if (COLOURS[id]) return COLOURS[id];
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${hash} 55% 38%)`;
}

export function allPersonaIds() {
  return [...catalog.keys()];
}
