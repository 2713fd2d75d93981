/**
 * Values an attacker would put in a function name, an image reference or a network to make docker
 * read them as flags or to reach a shell. None may ever pass validation.
 */
export const HOSTILE = [
  '--privileged',
  '-v=/:/host',
  '-v/:/host',
  'a;rm -rf /',
  '$(id)',
  '`id`',
  'a\nb',
  'busybox\n--privileged',
  'a\u0000b',
  'a\rb',
  'busybox --privileged',
  'img:tag -e X=1',
  'busybox\t-e',
  '--network=host',
  ' busybox',
  '\uff42usybox', // fullwidth b
  'busybox\u200b', // zero-width space
  'bus\u0443box', // Cyrillic u
  'x'.repeat(300),
  '../../etc/passwd',
  'a|b',
  'a&&b',
  '>out',
  '',
]

/** The same, plus values that are harmless as an image or a name but must never be a container's network. */
export const HOSTILE_NETWORKS = [...HOSTILE, 'host', 'container:abc', '--net=host']
