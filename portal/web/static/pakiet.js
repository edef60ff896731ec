// Back and Forward bring a page back with its form as the customer left it, while the
// parts the server rendered (the order summary) may be older: elements marked
// data-refresh-on-return ask the server again (their hx-trigger includes "refresh").
window.addEventListener("pageshow", (event) => {
  const navigation = performance.getEntriesByType("navigation")[0];
  if (!event.persisted && !(navigation && navigation.type === "back_forward")) {
    return;
  }
  for (const element of document.querySelectorAll("[data-refresh-on-return]")) {
    htmx.trigger(element, "refresh");
  }
});

// A summary that arrives while the customer is pressing one of its buttons (Pay) is not
// swapped in under the pointer: the press would end on a new button and the browser would
// drop the click ("Pay did nothing"). The press completes on the button the customer saw
// (the server checks that the price shown is still the price: see orders.place_order); if
// it ends elsewhere, the summary is asked for again.
let pressed = null;
let held = false;
document.addEventListener("pointerdown", (event) => {
  pressed = event.target.closest && event.target.closest("#summary button");
}, true);
document.addEventListener("pointerup", () => {
  if (!pressed) {
    return;
  }
  setTimeout(() => {  // after the click this release makes, if any
    const form = pressed && pressed.form;
    pressed = null;
    if (held && form && !form.dataset.submitted) {
      htmx.trigger(form, "refresh");
    }
    held = false;
  }, 0);
}, true);
document.addEventListener("submit", (event) => {
  event.target.dataset.submitted = "1";
}, true);
document.addEventListener("htmx:beforeSwap", (event) => {
  if (pressed && pressed.isConnected && event.detail.target.contains(pressed)) {
    event.detail.shouldSwap = false;
    held = true;
  }
});
