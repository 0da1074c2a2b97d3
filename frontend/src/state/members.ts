/**
 * Pure helpers of the share dialog: the rows it lists, checking an invite before it is sent,
 * and plain sentences for what happened or went wrong.
 */
import { ApiError, type Invite, type Member, type ProjectRole } from "../api/http";
import { failureSentence } from "./errors";

export interface MembersList {
  members: Member[];
  invites: Invite[];
}

export type RemoveTarget =
  | { kind: "member"; userSub: string; who: string }
  | { kind: "invite"; email: string; who: string };

export interface MemberRow {
  key: string;
  /** Name, else e-mail, else the account id. */
  name: string;
  /** Shown under the name when it adds something. */
  email?: string;
  role: ProjectRole;
  pending: boolean;
  you: boolean;
  /** How to remove this row; none for the owner (who cannot be removed). */
  remove?: RemoveTarget;
}

const ORDER: Record<ProjectRole, number> = { owner: 0, editor: 1, viewer: 2 };

const sameEmail = (a: string | null | undefined, b: string) => (a ?? "").trim().toLowerCase() === b.trim().toLowerCase();

/** Owner first, then members by role and name, then pending invites. */
export function memberRows(list: MembersList, youSub?: string): MemberRow[] {
  const members = [...list.members]
    .sort((a, b) => ORDER[a.role] - ORDER[b.role] || (a.name || a.email || "").localeCompare(b.name || b.email || ""))
    .map((m): MemberRow => {
      const name = m.name?.trim() || m.email?.trim() || m.user_sub;
      const email = m.email && m.email !== name ? m.email : undefined;
      return {
        key: `m:${m.user_sub}`,
        name,
        ...(email ? { email } : {}),
        role: m.role,
        pending: false,
        you: youSub !== undefined && m.user_sub === youSub,
        ...(m.role === "owner" ? {} : { remove: { kind: "member", userSub: m.user_sub, who: name } }),
      };
    });
  const invites = list.invites.map(
    (i): MemberRow => ({
      key: `i:${i.email}`,
      name: i.email,
      role: i.role,
      pending: true,
      you: false,
      remove: { kind: "invite", email: i.email, who: i.email },
    }),
  );
  return [...members, ...invites];
}

/** Why `email` cannot be invited (undefined: send it; the agent has the last word). */
export function validateInvite(email: string, list: MembersList | undefined): string | undefined {
  const value = email.trim();
  if (value === "") return "Enter the e-mail address of the person to invite.";
  if (!/^[^\s@]+@[^\s@]+$/.test(value)) return `“${value}” is not an e-mail address.`;
  const member = list?.members.find((m) => sameEmail(m.email, value));
  if (member?.role === "owner") return `${value} owns this project.`;
  if (member) return `${value} already has access. Remove them first to change their role.`;
  const invite = list?.invites.find((i) => sameEmail(i.email, value));
  if (invite) return `${value} is already invited. Withdraw the invitation first to change the role.`;
  return undefined;
}

/** What the dialog says after a successful invite (the agent answers a member or an invite). */
export function invitedNotice(result: Member | Invite | undefined, email: string): string {
  if (result && "user_sub" in result) {
    const who = result.name?.trim() || result.email || email;
    return `${who} can now ${result.role === "viewer" ? "view" : "edit"} this project.`;
  }
  return `Invited ${email}. They get access the first time they sign in.`;
}

export function removedNotice(target: RemoveTarget): string {
  return target.kind === "invite" ? `Withdrew the invitation for ${target.who}.` : `Removed ${target.who}.`;
}

/** A failed members request in plain words. */
export function shareErrorSentence(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 404) return "This project no longer exists, or you no longer have access to it.";
    if (err.code === "owner_only") return "Only the project's owner can change who has access.";
    if (err.status === 409) return err.detail ?? "That person already has access.";
    if ((err.status === 400 || err.status === 422) && err.detail) return `The agent did not accept this: ${err.detail}`;
  }
  return failureSentence(err);
}
