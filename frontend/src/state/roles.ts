/** What the caller may do in a project, by its role (docs/auth.md, "Who can do what"). */
import type { ProjectRole } from "../api/http";

const ROLES: readonly ProjectRole[] = ["owner", "editor", "viewer"];

/**
 * The caller's role in `project`. No role at all means an agent older than sharing, where the
 * caller owns everything; a role this editor does not know gets the least rights (the agent
 * decides anyway).
 */
export function roleOf(project: { role?: unknown }): ProjectRole {
  if (project.role === undefined || project.role === null) return "owner";
  return ROLES.find((r) => r === project.role) ?? "viewer";
}

/** Prompt, edit files, restore, rename. */
export function canEdit(role: ProjectRole): boolean {
  return role === "owner" || role === "editor";
}

/** Delete the project, invite and remove members. */
export function isOwner(role: ProjectRole): boolean {
  return role === "owner";
}

export const ROLE_LABEL: Record<ProjectRole, string> = { owner: "Owner", editor: "Can edit", viewer: "Can view" };

/** The badge of a project someone else owns ("Shared · Can edit"); none for one's own. */
export function sharedBadge(role: ProjectRole): string | undefined {
  return role === "owner" ? undefined : `Shared · ${ROLE_LABEL[role]}`;
}

/** What a viewer sees instead of the prompt input. */
export const VIEWER_NOTE = "You can view this project. Ask the owner for edit access to make changes.";
