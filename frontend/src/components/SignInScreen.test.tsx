import { describe, expect, it } from "vitest";
import { loginError } from "./SignInScreen";

describe("loginError", () => {
  it("turns the agent's login_error into a sentence", () => {
    expect(loginError("?login_error=the+ID+token+is+not+valid")).toBe(
      "Sign-in failed: the ID token is not valid",
    );
  });

  it("says nothing on an ordinary visit", () => {
    expect(loginError("")).toBeUndefined();
    expect(loginError("?redirect=/p/x")).toBeUndefined();
  });

  it("keeps a hostile reason short (it is text, never markup)", () => {
    const long = "x".repeat(5000);
    expect(loginError(`?login_error=${long}`)?.length).toBe("Sign-in failed: ".length + 300);
  });
});
