import { describe, expect, it } from "vitest";
import { ApiError } from "../api/http";
import { describeError, errorSentence, failureSentence } from "./errors";

describe("identity and sharing errors", () => {
  it("explains each code in plain words", () => {
    expect(describeError("read_only")).toEqual({
      title: "You can only view this project",
      action: "Ask the owner for edit access to make changes.",
    });
    expect(describeError("owner_only").title).toBe("Only the project's owner can do this");
    expect(describeError("not_authenticated").action).toBe("Sign in again to continue.");
    expect(describeError("forbidden_origin").action).toMatch(/AMICABLE_ALLOWED_ORIGINS/);
    expect(describeError("login_failed").title).toBe("Signing in did not work");
  });

  it("shows the server's detail for quota_exceeded", () => {
    const e = describeError("quota_exceeded", "You can have at most 100 projects.");
    expect(e).toEqual({ title: "You have reached a limit", action: "You can have at most 100 projects." });
    expect(describeError("quota_exceeded").action).toMatch(/no longer need/);
    expect(errorSentence("quota_exceeded", "At most 5 running sandboxes.")).toBe(
      "You have reached a limit: At most 5 running sandboxes.",
    );
  });

  it("turns HTTP failures into one sentence", () => {
    expect(errorSentence("owner_only")).toBe(
      "Only the project's owner can do this. Ask the owner to delete or share the project.",
    );
    expect(errorSentence("http_500", "boom")).toBe("Something went wrong: boom");
    expect(errorSentence("http_502")).toBe("Something went wrong (http_502).");
    expect(failureSentence(new ApiError(403, "read_only"))).toMatch(/^You can only view this project\./);
    expect(failureSentence(new TypeError("Failed to fetch"))).toMatch(/could not be reached/);
    expect(failureSentence(new Error("odd"))).toBe("odd");
  });

  it("keeps the existing explanations", () => {
    expect(describeError("turn_timeout").title).toBe("The turn took too long and was stopped");
    expect(describeError("some_new_code", "x")).toEqual({ title: "some new code", action: "See the details below." });
  });
});

describe("spend budgets", () => {
  it("says which budget is used up and when it resets, in the agent's words", () => {
    const detail = "Your daily budget of $5.00 is used up ($5.02 spent today). It resets at midnight UTC; an admin can raise it.";
    expect(describeError("budget_exceeded", detail)).toEqual({ title: "A spend budget is used up", action: detail });
    expect(describeError("budget_exceeded").action).toMatch(/token budget/);
    expect(describeError("unknown_model").title).toBe("That model is not offered any more");
  });
});
