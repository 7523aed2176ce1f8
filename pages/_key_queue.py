"""Keyboard shortcuts typed while the page reruns are queued and replayed, not lost.

Streamlit binds a button's shortcut only while the button is drawn and enabled: a key pressed
while a rerun is under way whose button is still disabled from the last run (Shift+B right after
drawing an outline: Save is enabled only once the drawing's rerun is done) did nothing. This
invisible components-v2 element listens to every key press first: when the page is busy (running,
or just clicked) and no enabled button takes the key, it keeps the key and, once the page is idle,
clicks the button that takes it (within ``HOLD_MS``; a key nothing takes by then is dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import streamlit as st

HOLD_MS = 3000  # a queued key is replayed within this long, else dropped
CLICK_BUSY_MS = 1000  # after a click on the page a rerun is likely on its way

_JS = """
export default function (component) {
  const { data } = component;
  const state = window.spocoKeyQueue || (window.spocoKeyQueue = { queue: [], lastClick: 0 });
  state.keys = data.keys;
  const forget = () => { if (state.keys === data.keys) state.keys = {}; };  // the page is left
  if (state.installed) return forget;
  state.installed = true;
  const running = () => document.querySelector('[data-testid="stStatusWidget"]') !== null;
  const busy = () => running() || Date.now() - state.lastClick < data.click_busy_ms;
  const button = (combo) => {
    for (const key of state.keys[combo] || []) {
      const el = document.querySelector(`.st-key-${key} button`);
      if (el && !el.disabled) return el;
    }
    return null;
  };
  const comboOf = (event) => {
    const parts = [];
    if (event.ctrlKey || event.metaKey) parts.push("mod");
    if (event.altKey) parts.push("alt");
    if (event.shiftKey) parts.push("shift");
    parts.push(event.key.toLowerCase());
    return parts.join("+");
  };
  document.addEventListener("pointerup", () => { state.lastClick = Date.now(); }, true);
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(target && target.tagName);
    if (typing || (target && target.isContentEditable)) return;
    const combo = comboOf(event);
    if (!(combo in state.keys) || event.repeat) return;
    if (button(combo) && !state.queue.length) return;  // Streamlit's own shortcut takes it now
    if (!busy() && !state.queue.length) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    state.queue.push({ combo, at: Date.now() });
  }, true);
  setInterval(() => {
    while (state.queue.length && Date.now() - state.queue[0].at > data.hold_ms) state.queue.shift();
    if (!state.queue.length || busy()) return;
    const el = button(state.queue[0].combo);
    if (el) {
      state.queue.shift();
      state.lastClick = Date.now();  // its rerun: the next queued key waits for it
      el.click();
    }
  }, 100);
  return forget;
}
"""

_NAME = "spoco_key_queue"
_KEY_NAMES = {"esc": "escape"} | {d: f"arrow{d}" for d in ("right", "left", "up", "down")}


@st.cache_resource
def _component() -> Callable[..., object]:
    """Registered once per server, on first use (registering needs a running app)."""
    return st.components.v2.component(_NAME, js=_JS)


def combo(shortcut: str) -> str:
    """A Streamlit shortcut ("Shift+B", "Mod+Z", "Shift+Right", "Esc") as the element's key
    events name it ("shift+b", "mod+z", "shift+arrowright", "escape")."""
    names = {
        "right": "arrowright",
        "left": "arrowleft",
        "up": "arrowup",
        "down": "arrowdown",
        "esc": "escape",
    }
    parts = [p.strip().lower() for p in shortcut.split("+")]
    mods = [
        m
        for m in ("mod", "alt", "shift")
        if m in parts or (m == "mod" and ("ctrl" in parts or "cmd" in parts))
    ]
    key = names.get(parts[-1], parts[-1])
    return "+".join([*mods, key])


def key_queue(buttons: Mapping[str, Sequence[str]], key: str = "ann_key_queue") -> None:
    """Queue shortcut keys pressed while the page is busy. ``buttons``: shortcut -> the widget keys
    of the buttons that take it, first enabled one first."""
    keys = {combo(shortcut): list(widgets) for shortcut, widgets in buttons.items()}
    _component()(key=key, data={"keys": keys, "hold_ms": HOLD_MS, "click_busy_ms": CLICK_BUSY_MS})
