import { describe, expect, it } from "vitest";
import { ApiError } from "../api/http";
import { invitedNotice, memberRows, removedNotice, shareErrorSentence, validateInvite, type MembersList } from "./members";
import { canEdit, isOwner, roleOf, sharedBadge } from "./roles";

const LIST: MembersList = {
  members: [
    { user_sub: "u-3", email: "zoe@example.com", name: "Zoe", role: "viewer" },
    { user_sub: "u-2", email: "bob@example.com", name: "", role: "editor" },
    { user_sub: "u-1", email: "alice@example.com", name: "Alice", role: "owner" },
  ],
  invites: [{ email: "carol@example.com", role: "viewer" }],
};

describe("roles", () => {
  it("treats a missing role as owner (agents older than sharing) and an unknown one as viewer", () => {
    expect(roleOf({})).toBe("owner");
    expect(roleOf({ role: "editor" })).toBe("editor");
    expect(roleOf({ role: "admin" })).toBe("viewer");
    expect([canEdit("owner"), canEdit("editor"), canEdit("viewer")]).toEqual([true, true, false]);
    expect([isOwner("owner"), isOwner("editor")]).toEqual([true, false]);
    expect(sharedBadge("owner")).toBeUndefined();
    expect(sharedBadge("viewer")).toBe("Shared · Can view");
  });
});

describe("member rows", () => {
  it("lists the owner first, members by role, then invites; the owner cannot be removed", () => {
    const rows = memberRows(LIST, "u-2");
    expect(rows.map((r) => [r.name, r.role, r.pending, r.you])).toEqual([
      ["Alice", "owner", false, false],
      ["bob@example.com", "editor", false, true],
      ["Zoe", "viewer", false, false],
      ["carol@example.com", "viewer", true, false],
    ]);
    expect(rows[0]?.remove).toBeUndefined();
    expect(rows[0]?.email).toBe("alice@example.com");
    expect(rows[1]?.email).toBeUndefined(); // the e-mail is already the name
    expect(rows[1]?.remove).toEqual({ kind: "member", userSub: "u-2", who: "bob@example.com" });
    expect(rows[3]?.remove).toEqual({ kind: "invite", email: "carol@example.com", who: "carol@example.com" });
  });
});

describe("inviting", () => {
  it("checks the address before sending", () => {
    expect(validateInvite("  ", LIST)).toBe("Enter the e-mail address of the person to invite.");
    expect(validateInvite("bob", LIST)).toBe("“bob” is not an e-mail address.");
    expect(validateInvite("Alice@Example.com", LIST)).toBe("Alice@Example.com owns this project.");
    expect(validateInvite("bob@example.com", LIST)).toMatch(/already has access/);
    expect(validateInvite("carol@example.com", LIST)).toMatch(/already invited/);
    expect(validateInvite("dave@example.com", LIST)).toBeUndefined();
    expect(validateInvite("dave@example.com", undefined)).toBeUndefined();
  });

  it("says whether the person got access now or at their first sign-in", () => {
    expect(invitedNotice({ user_sub: "u-4", email: "dave@example.com", name: "Dave", role: "editor" }, "dave@example.com")).toBe(
      "Dave can now edit this project.",
    );
    expect(invitedNotice({ email: "erin@example.com", role: "viewer" }, "erin@example.com")).toBe(
      "Invited erin@example.com. They get access the first time they sign in.",
    );
    expect(invitedNotice(undefined, "x@example.com")).toMatch(/^Invited x@example.com/);
    expect(removedNotice({ kind: "member", userSub: "u-3", who: "Zoe" })).toBe("Removed Zoe.");
    expect(removedNotice({ kind: "invite", email: "c@x", who: "c@x" })).toBe("Withdrew the invitation for c@x.");
  });

  it("explains failures in plain words", () => {
    expect(shareErrorSentence(new ApiError(404, "not_found"))).toMatch(/no longer exists/);
    expect(shareErrorSentence(new ApiError(403, "owner_only"))).toBe("Only the project's owner can change who has access.");
    expect(shareErrorSentence(new ApiError(422, "invalid_field", "role must be editor or viewer"))).toBe(
      "The agent did not accept this: role must be editor or viewer",
    );
    expect(shareErrorSentence(new ApiError(403, "forbidden_origin"))).toMatch(/^The agent does not accept requests from this address/);
    expect(shareErrorSentence(new TypeError("Failed to fetch"))).toMatch(/could not be reached/);
  });
});
