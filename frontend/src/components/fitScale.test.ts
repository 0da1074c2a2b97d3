import { describe, expect, it } from "vitest";
import { fitScale, scaledFrameStyle } from "./fitScale";

describe("the device preview fits its stage", () => {
  it("shrinks by the tighter side, never grows", () => {
    expect(fitScale(1000, 1000, 406, 860)).toBe(1);
    expect(fitScale(1000, 430, 406, 860)).toBe(0.5);
    expect(fitScale(203, 1000, 406, 860)).toBe(0.5);
    expect(fitScale(0, 0, 406, 860)).toBe(1); // not measured yet
  });

  it("scales from the corner and shrinks the layout box by negative margins", () => {
    expect(scaledFrameStyle(390, 844, 8, 1)).toEqual({ width: "390px", height: "844px" });
    expect(scaledFrameStyle(390, 844, 8, 0.5)).toEqual({
      width: "390px",
      height: "844px",
      transform: "scale(0.5)",
      transformOrigin: "0 0",
      marginRight: "-203px",
      marginBottom: "-430px",
    });
  });
});
