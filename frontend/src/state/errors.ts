/**
 * Readable explanations of the agent's `error` codes: what happened and what to do.
 */
import { ApiError } from "../api/http";

export interface ErrorExplanation {
  title: string;
  action: string;
}

const KNOWN: Record<string, ErrorExplanation> = {
  qa_failed: {
    title: "The checks (lint, type-check, build) still fail",
    action: "Ask the agent to fix the errors below, or fix them yourself in the Code tab.",
  },
  missing_session_id: {
    title: "The editor did not say which project to open",
    action: "Go back to the projects page and open the project again.",
  },
  project_init_failed: {
    title: "The project could not be opened",
    action: "Reload the page; if it keeps failing, check that the agent can start sandboxes.",
  },
  runtime_auto_heal_paused: {
    title: "Automatic fixing of preview errors is paused for this error",
    action: "The agent already tried twice. Describe the problem in the chat to try again.",
  },
  turn_cancelled: {
    title: "Stopped",
    action: "The turn was stopped; files written so far are kept. Send a new prompt to continue.",
  },
  cancelled: {
    title: "Stopped",
    action: "The turn was stopped; files written so far are kept. Send a new prompt to continue.",
  },
  turn_timeout: {
    title: "The turn took too long and was stopped",
    action: "Split the request into smaller steps and send it again.",
  },
  unknown_model: {
    title: "That model is not offered any more",
    action: "Pick another model above the prompt; the project's current model was used.",
  },
  llm_error: {
    title: "The model ran into an unexpected problem",
    action: "Nothing was lost: files written before the error are kept. Retry to send the same prompt again.",
  },
  llm_connection: {
    title: "The model could not be reached",
    action:
      "The connection to the model's server failed (it may be down, or the network is). Files written before the error are kept. Retry once it is back.",
  },
  llm_timeout: {
    title: "The model did not answer in time",
    action: "It may be overloaded. Files written before the error are kept. Retry in a moment.",
  },
  llm_rate_limited: {
    title: "The model is rate limiting this deployment",
    action: "Too many requests in a short time. Files written before the error are kept. Retry in a minute.",
  },
  llm_overloaded: {
    title: "The model is overloaded right now",
    action: "Files written before the error are kept. Retry in a minute.",
  },
  llm_api_error: {
    title: "The model's server reported an error",
    action: "Files written before the error are kept. Retry; if it keeps failing, try another model.",
  },
  llm_auth_failed: {
    title: "The model rejected the agent's API key",
    action: "An administrator has to fix the key (ANTHROPIC_API_KEY or OPENAI_API_KEY) and restart the agent.",
  },
  llm_request_rejected: {
    title: "The model refused this request",
    action: "Files written before the error are kept. Try rephrasing the prompt, or pick another model.",
  },
  sandbox_failed: {
    title: "The sandbox could not be started",
    action: "Reload the page to retry; the agent log says why it failed.",
  },
  invalid_json: { title: "The agent could not read a message", action: "Reload the page." },
  invalid_field: { title: "The agent rejected a message", action: "Reload the page and retry." },
  unknown_message_type: { title: "The agent does not understand this editor", action: "Update the editor and the agent to the same version." },
  hitl_pending: {
    title: "An approval is waiting",
    action: "Approve or reject the pending tool call to continue.",
  },
  connection_lost: {
    title: "Connection to the agent lost",
    action: "Check that the agent is running, then press Reconnect.",
  },
  save_failed: { title: "Saving failed", action: "Try again; the file was not changed." },
  turn_failed: {
    title: "The agent hit an error during this turn",
    action: "Files written so far are kept. Send the request again, or rephrase it.",
  },
  busy: { title: "The agent is busy with earlier requests", action: "Wait for them to finish, then send again." },
  model_not_configured: {
    title: "No language model is configured",
    action:
      "Set ANTHROPIC_API_KEY, or DEEPAGENTS_MODEL=openai:<model> with OPENAI_BASE_URL / OPENAI_API_KEY, for the agent, then restart it.",
  },
  not_initialized: { title: "The session is not open yet", action: "Reload the page." },
  sandbox_error: {
    title: "The sandbox reported an error",
    action: "Reload the page; if it persists, the agent log says what went wrong.",
  },
  read_only: {
    title: "You can only view this project",
    action: "Ask the owner for edit access to make changes.",
  },
  owner_only: {
    title: "Only the project's owner can do this",
    action: "Ask the owner to delete or share the project.",
  },
  not_authenticated: { title: "You are signed out", action: "Sign in again to continue." },
  forbidden_origin: {
    title: "The agent does not accept requests from this address",
    action: "Open the editor at the address the agent expects, or add this origin to AMICABLE_ALLOWED_ORIGINS.",
  },
  login_failed: {
    title: "Signing in did not work",
    action: "Try again. If it keeps failing, ask your administrator whether your account may use Amicable.",
  },
};

/** Errors worth a Retry button (re-sends the turn's prompt): the model or the network, not
 * the request itself. */
const RETRYABLE = new Set([
  "llm_error",
  "llm_connection",
  "llm_timeout",
  "llm_rate_limited",
  "llm_overloaded",
  "llm_api_error",
  "turn_failed",
  "sandbox_error",
]);

export function isRetryable(code: string): boolean {
  return RETRYABLE.has(code);
}

/** At a limit the server's detail says which one (projects, sandboxes, turns). */
function quotaExceeded(detail: string | undefined): ErrorExplanation {
  return {
    title: "You have reached a limit",
    action: detail?.trim() || "Close or delete something you no longer need, or wait for a running turn to finish.",
  };
}

/** A spend budget is used up: the server's detail says which, how much and when it resets. */
function budgetExceeded(detail: string | undefined): ErrorExplanation {
  return {
    title: "A spend budget is used up",
    action:
      detail?.trim() ||
      "This turn's token budget is used up. Send a narrower request, or ask an admin to raise the budget.",
  };
}

/** The explanation for `code` (codes and legacy free-text errors alike). */
export function describeError(code: string, detail?: string): ErrorExplanation {
  const known = KNOWN[code];
  if (known) return known;
  if (code === "budget_exceeded") return budgetExceeded(detail);
  if (code === "quota_exceeded") return quotaExceeded(detail);
  if (code.startsWith("HITL approval pending")) return KNOWN.hitl_pending as ErrorExplanation;
  if (code.startsWith("git_sync_failed")) {
    return { title: "Saving the changes to Git failed", action: "Your files are safe in the sandbox; retry later." };
  }
  if (/too large|too many images/.test(code)) {
    return { title: code, action: "Attach fewer or smaller images (at most 4, 5 MB each)." };
  }
  if (/^[a-z_]+$/.test(code)) {
    return { title: code.replace(/_/g, " "), action: detail ? "See the details below." : "Try again." };
  }
  return { title: code, action: "Try again, or rephrase your request." };
}

/** One plain sentence for a failed HTTP request (forms and lists show it inline). */
export function errorSentence(code: string, detail?: string): string {
  if (code === "quota_exceeded") return `${quotaExceeded(detail).title}: ${quotaExceeded(detail).action}`;
  const known = KNOWN[code];
  if (known) return `${known.title}. ${known.action}`;
  return detail ? `Something went wrong: ${detail}` : `Something went wrong (${code}).`;
}

/** The sentence for anything a request can throw: an API error, no network, a bug. */
export function failureSentence(err: unknown): string {
  if (err instanceof ApiError) return errorSentence(err.code, err.detail);
  // fetch() rejects with a TypeError when the agent cannot be reached at all.
  if (err instanceof TypeError) return "The agent could not be reached. Check that it is running, then try again.";
  return err instanceof Error ? err.message : String(err);
}
