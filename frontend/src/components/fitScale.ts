/** The device preview is scaled down to fit its stage instead of being cut off. */
import { useEffect, useState, type RefObject } from "react";

/** The factor (≤ 1) that fits a frame of `frameW`×`frameH` into `availW`×`availH`. */
export function fitScale(availW: number, availH: number, frameW: number, frameH: number): number {
  if (availW <= 0 || availH <= 0 || frameW <= 0 || frameH <= 0) return 1;
  const s = Math.min(1, availW / frameW, availH / frameH);
  return Math.max(0.1, Math.floor(s * 1000) / 1000);
}

/** The content box of `ref`'s element, kept current with a ResizeObserver. */
export function useContentSize(ref: RefObject<HTMLElement | null>): { width: number; height: number } {
  const [size, setSize] = useState({ width: 0, height: 0 });
  useEffect(() => {
    const el = ref.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver((entries) => {
      const rect = entries[0]?.contentRect;
      if (!rect) return;
      const { width, height } = rect;
      setSize((prev) => (prev.width === width && prev.height === height ? prev : { width, height }));
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, [ref]);
  return size;
}

/**
 * Inline style for a device frame of `width`×`height` CSS px plus a `bezel` border each side,
 * scaled by `scale` from its top-left corner; negative margins shrink its layout box to match,
 * so the stage centres and scrolls it by its visible size.
 */
export function scaledFrameStyle(width: number, height: number, bezel: number, scale: number): React.CSSProperties {
  const outerW = width + 2 * bezel;
  const outerH = height + 2 * bezel;
  const style: React.CSSProperties = { width: `${width}px`, height: `${height}px` };
  if (scale >= 1) return style;
  return {
    ...style,
    transform: `scale(${scale})`,
    transformOrigin: "0 0",
    marginRight: `${-outerW * (1 - scale)}px`,
    marginBottom: `${-outerH * (1 - scale)}px`,
  };
}
