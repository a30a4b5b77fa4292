// The FileDescriptorSet of ../proto/vigie.proto, base64, made at build time
// by the plugin in vite.config.ts.
declare module "virtual:vigie-proto" {
  const descriptorSetBase64: string;
  export default descriptorSetBase64;
}
