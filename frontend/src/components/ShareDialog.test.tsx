// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from "vitest";
import { allTestId, byTestId, change, cleanup, click, flush, press, queryTestId, render, stubFetch, submit } from "../test/dom";
import { ShareDialog } from "./ShareDialog";

const BASE = "/api/projects/p1/members";
const LIST = {
  members: [
    { user_sub: "u-1", email: "alice@example.com", name: "Alice", role: "owner" },
    { user_sub: "u-3", email: "zoe@example.com", name: "Zoe", role: "viewer" },
  ],
  invites: [{ email: "carol@example.com", role: "editor" }],
};

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

async function open(role: "owner" | "editor" | "viewer" = "owner", onClose = vi.fn()) {
  render(<ShareDialog projectId="p1" projectName="Todo" role={role} youSub="u-1" onClose={onClose} />);
  await flush();
  return onClose;
}

function rows(): string[] {
  return allTestId("member").map((li) => li.textContent ?? "");
}

describe("share dialog", () => {
  it("lists members and pending invites, owner first, with focus in the invite field", async () => {
    stubFetch({ [`GET ${BASE}`]: { body: LIST } });
    await open();
    expect(rows()).toEqual([
      "Alice (you)alice@example.comOwner",
      "Zoezoe@example.comCan viewRemove",
      "carol@example.comInvited · Can editWithdraw",
    ]);
    expect(document.activeElement).toBe(byTestId("invite-email"));
  });

  it("invites by e-mail with the chosen role and reloads the list", async () => {
    const listed = { ...LIST, invites: [...LIST.invites, { email: "dave@example.com", role: "viewer" }] };
    let lists = 0;
    const calls = stubFetch({
      [`GET ${BASE}`]: () => ({ body: lists++ === 0 ? LIST : listed }),
      [`POST ${BASE}`]: { status: 201, body: { email: "dave@example.com", role: "viewer" } },
    });
    await open();
    change(byTestId<HTMLInputElement>("invite-email"), " dave@example.com ");
    change(byTestId<HTMLSelectElement>("invite-role"), "viewer");
    submit(byTestId<HTMLFormElement>("invite-form"));
    await flush();
    expect(calls.filter((c) => c.method === "POST")).toEqual([
      { method: "POST", path: BASE, body: { email: "dave@example.com", role: "viewer" }, credentials: "include" },
    ]);
    expect(byTestId("share-notice").textContent).toBe("Invited dave@example.com. They get access the first time they sign in.");
    expect(byTestId<HTMLInputElement>("invite-email").value).toBe("");
    expect(rows().at(-1)).toBe("dave@example.comInvited · Can viewWithdraw");
  });

  it("checks the address first and shows the agent's refusal in plain words", async () => {
    const calls = stubFetch({
      [`GET ${BASE}`]: { body: LIST },
      [`POST ${BASE}`]: { status: 403, body: { error: "owner_only" } },
    });
    await open();
    submit(byTestId<HTMLFormElement>("invite-form"));
    expect(byTestId("share-error").textContent).toBe("Enter the e-mail address of the person to invite.");
    change(byTestId<HTMLInputElement>("invite-email"), "zoe@example.com");
    submit(byTestId<HTMLFormElement>("invite-form"));
    expect(byTestId("share-error").textContent).toMatch(/already has access/);
    expect(calls.some((c) => c.method === "POST")).toBe(false);
    change(byTestId<HTMLInputElement>("invite-email"), "erin@example.com");
    submit(byTestId<HTMLFormElement>("invite-form"));
    await flush();
    expect(byTestId("share-error").textContent).toBe("Only the project's owner can change who has access.");
    expect(byTestId<HTMLInputElement>("invite-email").value).toBe("erin@example.com");
  });

  it("removes a member after confirmation", async () => {
    let removed = false;
    const calls = stubFetch({
      [`GET ${BASE}`]: () => ({ body: removed ? { ...LIST, members: [LIST.members[0]] } : LIST }),
      [`DELETE ${BASE}/u-3`]: () => {
        removed = true;
        return { status: 204 };
      },
    });
    await open();
    click(allTestId("member-remove")[0] as HTMLElement);
    expect(byTestId("remove-confirm").textContent).toContain("Remove Zoe?");
    click(byTestId("dialog-confirm"));
    await flush();
    expect(calls.filter((c) => c.method === "DELETE").map((c) => c.path)).toEqual([`${BASE}/u-3`]);
    expect(byTestId("share-notice").textContent).toBe("Removed Zoe.");
    expect(rows().some((r) => r.startsWith("Zoe"))).toBe(false);
  });

  it("withdraws an invite by e-mail, and Cancel or Escape in the confirmation changes nothing", async () => {
    const onClose = vi.fn();
    const calls = stubFetch({
      [`GET ${BASE}`]: { body: LIST },
      [`DELETE ${BASE}/by-email/carol%40example.com`]: { status: 204 },
    });
    await open("owner", onClose);
    click(allTestId("member-remove")[1] as HTMLElement);
    click(byTestId("dialog-cancel"));
    click(allTestId("member-remove")[1] as HTMLElement);
    press("Escape");
    expect(queryTestId("remove-confirm")).toBeNull();
    expect(onClose).not.toHaveBeenCalled();
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    click(allTestId("member-remove")[1] as HTMLElement);
    expect(byTestId("remove-confirm").textContent).toContain("Withdraw the invitation for carol@example.com?");
    click(byTestId("dialog-confirm"));
    await flush();
    expect(calls.filter((c) => c.method === "DELETE").map((c) => c.path)).toEqual([`${BASE}/by-email/carol%40example.com`]);
    press("Escape");
    expect(onClose).toHaveBeenCalledTimes(1);
  });

  it("says why a removal failed", async () => {
    stubFetch({
      [`GET ${BASE}`]: { body: LIST },
      [`DELETE ${BASE}/u-3`]: { status: 500, body: { error: "internal_error", detail: "database is locked" } },
    });
    await open();
    click(allTestId("member-remove")[0] as HTMLElement);
    click(byTestId("dialog-confirm"));
    await flush();
    expect(byTestId("share-error").textContent).toBe("Something went wrong: database is locked");
    expect(rows()).toHaveLength(3);
  });

  it("is read-only for everyone but the owner", async () => {
    stubFetch({ [`GET ${BASE}`]: { body: LIST } });
    await open("editor");
    expect(queryTestId("invite-form")).toBeNull();
    expect(allTestId("member-remove")).toHaveLength(0);
    expect(byTestId("share-read-only").textContent).toBe("Only the owner can invite people or remove them.");
    expect(byTestId("share-dialog").getAttribute("aria-label")).toBe("Members of “Todo”");
    expect(rows()).toHaveLength(3);
  });

  it("explains a list that cannot be loaded", async () => {
    stubFetch({});
    await open("viewer");
    expect(byTestId("share-load-error").textContent).toBe("This project no longer exists, or you no longer have access to it.");
  });
});
