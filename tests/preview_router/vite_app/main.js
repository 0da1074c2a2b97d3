export const message = "version 1";
document.querySelector("#app").textContent = message;
if (import.meta.hot) {
  import.meta.hot.accept();
}
