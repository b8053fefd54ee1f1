// The DOM builder every page uses, and small DOM helpers.
//
// Security: everything that comes from the API (transcripts, notes, codes,
// event data) is untrusted. It only ever reaches the DOM through `el()` /
// textContent, never through innerHTML.

/**
 * el('a', {href: '/x', class: 'btn', onclick: fn, dataset: {id: 1}}, 'text', child, [more])
 * Strings become text nodes; null/undefined/false children are skipped.
 */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k === 'style' && typeof v === 'object') Object.assign(node.style, v);
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else if (k === 'text') node.textContent = v;
      else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled' ||
               k === 'hidden' || k === 'readOnly' || k === 'required' || k === 'multiple') node[k] = v;
      else if (k === 'href' || k === 'src') node.setAttribute(k, safeUrl(v));
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.appendChild(c);
    else node.appendChild(document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** add(node, a, b, ...) appends like el()'s children: null/false skipped, arrays flattened (native append would write "null"). */
export function add(node, ...children) { return append(node, children); }
/** refill(node, ...) = clear, then add. */
export function refill(node, ...children) { return append(clear(node), children); }

/** Only relative URLs and http(s) ones reach href/src: a javascript: URL from data never does. */
export function safeUrl(u) {
  const s = String(u);
  if (/^(\/|\.|#|\?)/.test(s) && !s.startsWith('//')) return s;
  try {
    const p = new URL(s, location.href);
    if (p.protocol === 'http:' || p.protocol === 'https:' || p.protocol === 'blob:') return s;
  } catch (_) { /* fall through */ }
  return '#';
}

/** Position of node's top inside box's scrolled content. */
export function offsetWithin(box, node) {
  return node.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop;
}

/** Scrolls box just enough to show node. */
export function scrollWithin(box, node) {
  const top = offsetWithin(box, node);
  if (top < box.scrollTop || top + node.offsetHeight > box.scrollTop + box.clientHeight) box.scrollTop = Math.max(0, top - 8);
}
