import tseslint from "typescript-eslint"

/**
 * Runstream's first rule, enforced: no module-level mutable state in src/.
 * Every piece of state lives in a service built by a Layer.
 */
const moduleState = [
  {
    selector: "Program > VariableDeclaration[kind!='const']",
    message: "module-level let/var: state belongs in a service built by a Layer"
  },
  {
    selector: "Program > ExportNamedDeclaration > VariableDeclaration[kind!='const']",
    message: "module-level let/var: state belongs in a service built by a Layer"
  },
  {
    selector: ":matches(Program, Program > ExportNamedDeclaration) > VariableDeclaration > VariableDeclarator > NewExpression.init[callee.name=/^(Map|Set|WeakMap|WeakSet|EventEmitter|Array)$/]",
    message: "module-level mutable collection: state belongs in a service built by a Layer"
  },
  {
    selector: ":matches(Program, Program > ExportNamedDeclaration) > VariableDeclaration > VariableDeclarator > ArrayExpression.init",
    message: "module-level array literal is mutable: use a ReadonlyArray `as const` or move it into a service"
  },
  {
    selector: ":matches(Program, Program > ExportNamedDeclaration) > VariableDeclaration > VariableDeclarator > CallExpression.init[callee.object.name=/^(Effect|Runtime|ManagedRuntime)$/][callee.property.name=/^(runSync|runPromise|runFork|make)$/]",
    message: "module-level runtime or eagerly run effect: build it in a Layer"
  },
  {
    selector: ":matches(Program, Program > ExportNamedDeclaration) > VariableDeclaration > VariableDeclarator > CallExpression.init[callee.object.name=/^(Ref|Queue|PubSub|Deferred|SynchronizedRef|FiberRef)$/][callee.property.name=/^unsafe/]",
    message: "module-level Ref/Queue/PubSub: state belongs in a service built by a Layer"
  }
]

export default tseslint.config(
  { ignores: ["node_modules/**", ".runstream/**", "coverage/**", "dist/**", "bundle/**", "examples/*/node_modules/**", "examples/*/dist/**"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-empty-object-type": "off"
    }
  },
  {
    files: ["src/**/*.ts"],
    rules: { "no-restricted-syntax": ["error", ...moduleState] }
  }
)
