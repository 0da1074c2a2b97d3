/** The one way the editor writes token counts and money. */

/** "2,400 in · 160 out" (every token count in the editor reads like this). */
export function formatTokens(input: number | undefined, output: number | undefined): string {
  return `${(input ?? 0).toLocaleString("en-US")} in · ${(output ?? 0).toLocaleString("en-US")} out`;
}

/** "$0.0421" below $10, "$12.34" above. */
export function formatMoney(usd: number | undefined): string {
  const v = usd ?? 0;
  return `$${v < 10 ? v.toFixed(4) : v.toFixed(2)}`;
}
