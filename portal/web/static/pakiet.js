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
