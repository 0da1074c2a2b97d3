// @vitest-environment jsdom
import { afterEach, describe, expect, it } from "vitest";
import { byTestId, cleanup, render } from "../test/dom";
import { Provisioning } from "./Provisioning";

afterEach(cleanup);

describe("Provisioning", () => {
  it("lists the restore step only while a re-created sandbox restores its project", () => {
    const { container, rerender } = render(<Provisioning status={{ stage: "starting_preview", message: "Starting" }} />);
    expect(container.querySelector('[data-testid="stage-restoring"]')).toBeNull();
    rerender(<Provisioning status={{ stage: "restoring", message: "Restoring your project and its history…" }} />);
    const step = byTestId("stage-restoring", container);
    expect(step.className).toContain("active");
    expect(byTestId("stage-starting_preview", container).className).toContain("done");
    expect(byTestId("provisioning", container).dataset.stage).toBe("restoring");
    expect(container.textContent).toContain("Restoring your project and its history…");
  });

  it("shows a failed restore as the failed step", () => {
    const { container } = render(<Provisioning status={{ stage: "failed", message: "damaged" }} failedAt="restoring" />);
    expect(byTestId("stage-restoring", container).className).toContain("error");
  });
});
