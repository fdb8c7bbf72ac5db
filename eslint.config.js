// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";
import reactHooks from "eslint-plugin-react-hooks";

export default tseslint.config(
  { ignores: ["**/node_modules/**", "dist/**", "e2e/results/**", "e2e/test-results/**", "e2e/playwright-report/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.es2022 } },
    rules: {
      // An empty catch hides failures; every error is handled or rethrown.
      "no-empty": ["error", { allowEmptyCatch: false }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      eqeqeq: ["error", "always"],
    },
  },
  {
    files: ["apps/server/**", "e2e/**", "*.config.*", "**/*.mjs"],
    languageOptions: { globals: { ...globals.node } },
  },
  {
    files: ["apps/worker/**", "apps/dashboard/**", "packages/p2p/**"],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    files: ["apps/dashboard/**/*.{ts,tsx}"],
    ...reactHooks.configs.flat.recommended,
  },
);
