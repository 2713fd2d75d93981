import {expect} from 'chai'

import {checkImage} from '../../../src/runtime/shared/validate.js'
import {badRequest} from '../../helpers/amp-error.js'
import {TEST_IMAGES} from '../../helpers/images.js'

const HEX64 = '0123456789abcdef'.repeat(4)

/** The message checkImage gives for `image`: one line that names the rule broken. */
function refusal(image: string): string {
  const {message} = badRequest(() => checkImage(image))
  expect(message).to.not.contain('\n')
  return message
}

describe('image references (docker reference grammar)', () => {
  const valid = [
    'busybox',
    'busybox:1.36',
    'library/busybox:1.36',
    'localhost/x',
    'localhost:5000/a/b:tag',
    `registry.example.com/x/y@sha256:${HEX64}`,
    `busybox@sha384:${'ab'.repeat(48)}`,
    `busybox:1@sha512:${'cd'.repeat(64)}`,
    'Registry.Example.COM:443/team/app',
    '127.0.0.1:5000/fn:v1',
    'a__b',
    'a-b--c',
    'a.b_c',
    'a/b/c/d/e',
    'amp-test/cat:1',
    'amp-demo-function:latest',
    'fn:V1_rc.2-Final',
    `fn:${'t'.repeat(128)}`,
    'my/image:1',
    'ghcr.io/acme/resize:1.2.3',
    `r/${'a'.repeat(253)}`,
    ...Object.values(TEST_IMAGES),
  ]
  for (const image of valid) {
    it(`accepts ${image.length > 60 ? `${image.slice(0, 40)}… (${image.length} chars)` : image}`, () => {
      expect(checkImage(image)).to.equal(image)
    })
  }

  const refused: Array<[string, string, RegExp]> = [
    ['an uppercase repository (#15)', 'UPPER/x', /^invalid image reference "UPPER\/x": the repository name must be lowercase$/],
    ['an uppercase one-part name', 'BusyBox:1', /: the repository name must be lowercase$/],
    ['uppercase after a registry', 'ghcr.io/Acme/fn', /: the repository name must be lowercase$/],
    ['an empty tag', 'busybox:', /: the tag may hold at most 128 characters of letters, digits, _ \. -/],
    ['a tag of 129 characters', `fn:${'t'.repeat(129)}`, /: the tag may hold at most 128 characters/],
    ['a tag starting with .', 'fn:.x', /: the tag may hold/],
    ['a tag with +', 'fn:1+2', /: the tag may hold/],
    ['a short digest', 'busybox@sha256:abc', /: a digest is algorithm:hex, e\.g\. sha256:<64 lowercase hex digits>$/],
    ['an uppercase hex digest', `busybox@sha256:${HEX64.toUpperCase()}`, /: a digest is algorithm:hex/],
    ['a digest of an algorithm docker has not', `busybox@md5:${'a'.repeat(32)}`, /: a digest is algorithm:hex/],
    ['an empty digest', 'busybox@', /: a digest is algorithm:hex/],
    ['two digests', `busybox@sha256:${HEX64}@sha256:${HEX64}`, /: a digest is algorithm:hex/],
    ['an empty component', 'a//b', /: the repository name has an empty part/],
    ['a trailing /', 'a/b/', /: the repository name has an empty part/],
    ['a leading /', '/a', /: the repository name has an empty part/],
    ['no name before the tag', ':1', /: the repository name has an empty part/],
    ['a separator at the end of a part', 'a-/b', /: each part of the repository name is lowercase letters and digits, separated by/],
    ['three underscores', 'a___b', /: each part of the repository name/],
    ['a dot part', 'a/../b', /: each part of the repository name/],
    ['a dot path (its first part, with a dot, is read as a registry)', '../etc', /: the registry host must be/],
    ['a registry with an empty port', 'localhost:/x', /: the registry host must be a host name or address/],
    ['a registry with _', 'my_reg.io/x', /: the registry host must be/],
    ['256 characters', `r/${'a'.repeat(254)}`, /: the reference may hold at most 255 characters$/],
    ['a one-part Docker Hub name over 255 with library/', 'a'.repeat(248), /: the repository name may hold at most 255 characters/],
  ]
  for (const [why, image, message] of refused) {
    it(`refuses ${why}, naming the rule`, () => expect(refusal(image)).to.match(message))
  }

  it('counts "library/" before a one-part Docker Hub name, as docker does: 247 characters are the most', () => {
    expect(checkImage('a'.repeat(247))).to.equal('a'.repeat(247))
    expect(checkImage(`a/${'b'.repeat(253)}`)).to.have.length(255)
  })

  it('keeps the message for references docker would read as flags or a shell would run', () => {
    const shape = /: expected \[registry\/\]name\[:tag\]\[@digest\], e\.g\. busybox:1\.36 or ghcr\.io\/acme\/fn:1$/
    for (const image of ['--privileged', '-v/:/host', 'a b', 'img;rm -rf /', 'busybox\n', '\uff42usybox']) {
      expect(refusal(image)).to.match(shape)
    }
  })
})
